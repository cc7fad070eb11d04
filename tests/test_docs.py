"""The documentation that is generated from code must not drift from it."""

from pathlib import Path

from engine.storage.schema import schema_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_recording_schema_doc_matches_the_ddl():
    doc = (ROOT / "docs" / "recording-schema.md").read_text()
    assert schema_markdown().strip() in doc, "regenerate docs/recording-schema.md (see its first line)"
