"""Slurm: `sacct --parsable2` output → usage records (placeholder; filled in after the core)."""
