#!/usr/bin/env python
"""Django's command-line utility; `openchargeback` is the same with hyphenated command names."""

import sys

from openchargeback.cli import main

if __name__ == "__main__":
    main(sys.argv)
