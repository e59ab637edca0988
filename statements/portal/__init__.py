"""The PI self-service portal (/portal/): a PI and their delegates see that PI's statements,
the lines behind them, the open month so far and their own charges, and nobody else's.

Access rules live in `access.py`; every view goes through them, and anything a user may not see
is a 404 (no hint that it exists). Staff keep the admin; the portal is for PIs and delegates.
"""
