"""The fuzzer is part of the whole suite: ./scripts/test runs it in both passes (SQLite, then
PostgreSQL and Redis), every role, with a bounded budget. The fixtures of tests/conftest.py
apply as usual.

What always runs in full (tests/fuzz/sweeps.py): for every form, htmx request, upload and
address the crawl finds, each field in turn at the integer columns' limits and beyond, at the
calendar's ends, with NUL, new line and escape characters; every hostile upload (a 225 MP
decompression bomb, an 81 MP picture, 9 MB, not an image...) in every file field; `next` and
`return_to` pointing off the site; every variable part of every route's address replaced by a
huge id or a hostile reference. Then random combinations (hypothesis) within a time budget.

    FUZZ_SECONDS    seconds of random combinations per role after the sweeps (default 10)
    FUZZ_EXAMPLES   random examples per form at most (default 3)
    FUZZ_MAX_PAGES  pages crawled per role (default 80)
    FUZZ_SEED       a fixed seed (default: derandomized when FUZZ_EXAMPLES is the default,
                    random otherwise; the seed used is printed)

Nightly (4 roles x 10 minutes of random combinations plus the sweeps, per pass; see README):
    FUZZ_SECONDS=600 FUZZ_EXAMPLES=500 ./scripts/test tests/fuzz
"""
