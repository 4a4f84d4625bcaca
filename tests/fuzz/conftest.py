"""The form fuzzer runs only when asked for by path (`pytest tests/fuzz`), not in ./scripts/test:
CI runs it as its own bounded step after the suite (.ci/run). The fixtures of tests/conftest.py
apply as usual.

    FUZZ_EXAMPLES   examples per form and role (default 3: about two minutes per pass here)
    FUZZ_MAX_PAGES  pages crawled per role (default 80)
    FUZZ_SEED       a fixed seed (default: derandomized when FUZZ_EXAMPLES is the default,
                    random otherwise; the seed used is printed)
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path, config):
    asked = []
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        asked.append(path == HERE or HERE in path.parents)
    return not any(asked)
