"""Small storage and token usage files written by the tests (formats of docs/sources.md).

Storage, January 2026 (31 days). Sizes are multiples of 3.1 TB so every interval's TB-months is
a terminating decimal: 3.1 TB held d days is 3.1 × d / 31 = d/10 TB-months.
"""

from __future__ import annotations

import json
from pathlib import Path

ADA = {"pi_email": "ada@example.edu", "project_id": "engines", "fund_org": "MATH-1843"}
CHARLES = {"pi_email": "charles@example.edu", "project_id": "difference", "fund_org": "ENG-1822"}

# lovelace-lab: 3.1 TB carried in from December (Jan 1-11), 6.2 TB (Jan 11-21), 1.55 TB (Jan
# 21-Feb 1); the sample at Feb 1 00:00 belongs to February. babbage (archive tier): one sample,
# mid-month, holding from the 1st. orphan: on no map.
STORAGE_CSV = """path,bytes_used,sampled_at,tier
/ifs/research/lovelace-lab,3100000000000,2025-12-28T06:00:00Z,
/ifs/research/lovelace-lab,6200000000000,2026-01-11T00:00:00Z,
/ifs/research/lovelace-lab/,1550000000000,2026-01-21,
/ifs/research/lovelace-lab,9300000000000,2026-02-01T00:00:00Z,
/ifs/archive/babbage,12000000000000,2026-01-16T12:00:00Z,archive
/ifs/research/orphan,750000000000,2026-01-01T00:00:00Z,
"""

STORAGE_MAP_CSV = """path,pi_email,project_id,fund_org
/ifs/research/lovelace-lab,ada@example.edu,engines,MATH-1843
/ifs/archive/babbage,charles@example.edu,difference,ENG-1822
"""

# `isi quota quotas list --format=json`: a directory quota under a mapped parent, a user quota.
ISILON_JSON = json.dumps(
    [
        {
            "id": "q1",
            "path": "/ifs/research/lovelace-lab/sub",
            "type": "directory",
            "usage": {"logical": 620000000000, "physical": 900000000000},
        },
        {
            "id": "q2",
            "path": "/ifs/research/lovelace-lab",
            "type": "user",
            "usage": {"logical": 1},
        },
    ]
)

# Qumulo /v1/files/quotas/status/, two nightly reports in one file; dot files as the map.
QUMULO_JSON = json.dumps(
    [
        {
            "sampled_at": "2026-01-01T02:00:00Z",
            "quotas": [{"id": "7", "path": "/research_projects/engines/", "capacity_usage": "0"}],
        },
        {
            "sampled_at": "2026-01-11T00:00:00Z",
            "quotas": [
                {"id": "7", "path": "/research_projects/engines/", "capacity_usage": "31000000000"}
            ],
        },
    ]
)
QUMULO_DOTFILES = json.dumps(
    [
        dict(ADA, active=True, free_gb=500),
        {"pi_email": "x@example.edu", "project_id": "retired", "fund_org": "X", "active": False},
    ]
)

# ChatGPT Edu usage export, January 2026. Ada is on the map by user; grace is not, nor is her
# workspace.
EDU_HEADER = (
    "\ufeffdate_partition,account_id,account_user_id,email,name,public_id,usage_type,"
    "usage_credits,usage_quantity,usage_units\n"
)
EDU_CSV = (
    EDU_HEADER
    + """\
1/5/2026,ws_north,u1,Ada@example.edu,Ada L,user-1,chat.completion.5.reasoning,10,1,counts
1/7/2026,ws_north,u1,ada@example.edu,Ada L,user-1,codex,217.535,4350.7,counts
1/8/2026,ws_north,u2,grace@example.edu,Grace H,user-2,chat.completion.5.reasoning,10,1,counts
1/11/2026,ws_north,u1,ada@example.edu,Ada L,user-1,chat_tool.imagegen,125,25,counts
1/12/2026,ws_north,u1,ada@example.edu,Ada L,user-1,codex,7.295,145.9,counts
1/20/2026,ws_north,u1,ada@example.edu,Ada L,user-1,chat.completion.5.reasoning,100,10,counts
"""
)

TOKENS_MAP_JSON = json.dumps(
    {"projects": [dict(ADA, users=[{"email": "ada@example.edu", "role": "pi"}])]}
)

# Generic: input and output tokens per model; bob is mapped through his workspace.
GENERIC_CSV = """date,user,workspace,model,input_tokens,output_tokens
2026-01-03,ada@example.edu,,gpt-4o,1200000,300000
2026-01-04T15:30:00Z,bob@example.edu,physics,gpt-4o,400000,50000
"""
GENERIC_MAP_CSV = """user,workspace,pi_email,project_id,fund_org
ada@example.edu,,ada@example.edu,engines,MATH-1843
,physics,charles@example.edu,difference,ENG-1822
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
