"""Names are searched without case or Latin accents, Khmer as written; the migration that refolded
stored names applied the very table the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from domain.name_fold import LATIN_FOLD, fold

MIGRATION = Path(__file__).parents[2] / "migrations" / "0017_ussd_chw.sql"


def test_latin_names_lose_case_and_accents() -> None:
    assert fold("Nguyễn Thị PHƯỢNG") == "nguyen thi phuong"
    assert fold("Đỗ Hélène Çağlar") == "do helene caglar"
    assert fold("\uff33\uff4f\uff4b") == "sok"  # full-width letters, as some keyboards type them


def test_khmer_is_kept_as_written() -> None:
    # Khmer vowel signs and the coeng are combining marks that carry meaning: they stay.
    assert fold("សុខ ដារ៉ា") == "សុខ ដារ៉ា"
    assert fold("ចាន់ សុភា") != fold("ចន សភ")


def test_the_migration_refolds_with_the_same_table() -> None:
    found = re.search(r"translate\(search_text, '([^']*)', '([^']*)'\)", MIGRATION.read_text(encoding="utf-8"))
    assert found is not None
    source, target = found[1], found[2]
    assert len(source) == len(target)
    assert dict(zip(source, target, strict=True)) == LATIN_FOLD
