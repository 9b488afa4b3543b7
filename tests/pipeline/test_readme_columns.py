"""The README's column lists are read as the workflow tests read them, and each names a table
those tests check against a run (tests/workflow/: the default-like run, the adaptive run with
moderated variances, the DP run)."""

from __future__ import annotations

from readme_columns import TABLES, readme_columns, strip_parentheses

#: the settings under which a README list adds columns, each checked by a workflow test
SETTINGS = {None, "audit.moderated_variance: true", "dp"}


def test_every_readme_column_list_names_a_table_the_workflow_tests_check():
    lists = readme_columns()
    assert {p for _, p in lists} == set(TABLES), "README lists and tests/readme_columns.py TABLES differ"
    assert {s for s, _ in lists} == SETTINGS
    for key, cols in lists.items():
        assert cols and len(cols) == len(set(cols)), (key, cols)
    # spot checks of the parser on lists of each form (table, inline, with a setting)
    assert lists[(None, "audit/record_risk.parquet")][:4] == ["record_id", "patient_id", "auc", "se"]
    assert lists[(None, "baselines.tsv")][:2] == ["baseline", "member_set"]
    assert "auc_mod" in lists[("audit.moderated_variance: true", "audit/record_risk.parquet")]
    assert lists[(None, "subgroups/{attribute}.tsv")] == lists[(None, "meta/subgroup_tests.tsv")]


def test_text_in_parentheses_is_not_a_column():
    assert strip_parentheses("`a` (`b`, see (`c`)) and `d` (`e)`)") == "`a`  and `d` "
