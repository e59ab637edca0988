"""Why an import is refused. Nothing is written when one is raised."""


class FileRefused(Exception):
    """A file can't be read as FOCUS at all (empty, not CSV, not UTF-8, unreadable)."""


class ImportRefused(Exception):
    """The import is refused; `problems` lists the file, line and column of each, 20 at most."""

    MAX_LISTED = 20

    def __init__(self, message: str, problems: list[str] | None = None, total: int | None = None):
        self.message = message
        self.problems = list(problems or [])[: self.MAX_LISTED]
        self.total = total if total is not None else len(problems or [])
        super().__init__(str(self))

    def __str__(self):
        lines = [self.message]
        lines += [f"  {p}" for p in self.problems]
        if self.total > len(self.problems):
            lines.append(f"  … and {self.total - len(self.problems)} more")
        return "\n".join(lines)
