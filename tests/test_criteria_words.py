"""The "N matches by ..." words of a group: a lead's company title is not the lead's own title."""

import pandas as pd

from matchers.table import RoleTable
from scoring.find import find_duplicates
from scoring.settings import MatchSettings, Thresholds

# two pairs of records: each pair shares a company title and a phone (a lead's own title, the deal's
# name, differs within the pair)
ROWS = pd.DataFrame({
    "id": [1, 2, 3, 4],
    "title": ["Order from the site", "Call back about delivery", "Price request", "Exhibition contact"],
    "company": ["ООО «Ромашка»", "Ромашка ООО", "АО «Вектор плюс»", "Вектор плюс АО"],
    "phone": ["+7 495 123-45-67", "8 (495) 123-45-67", "+7 812 765-43-21", "8 812 765 43 21"],
})


def _criteria(entity_type: str) -> list[str]:
    # (a lead's own title is no matching role: the records carry it, the criteria must not name it)
    table = RoleTable.from_frame(entity_type, ROWS, {"company": "company", "phone": "phone"}, "id")
    # (four records teach the model little: the pairs score ~0.8, made groups here by the thresholds)
    result = find_duplicates(table, MatchSettings(thresholds=Thresholds(possible=0.5, probable=0.7, certain=0.9)))
    groups = sorted(map(sorted, result.group_table["member_ids"]))
    assert groups == [[1, 2], [3, 4]], groups
    return result.group_table["criteria"].tolist()


def test_a_leads_company_title_is_said_so():
    for words in _criteria("lead"):
        assert "1 match by company title" in words, words
        assert "by title" not in words, words


def test_a_companys_title_stays_its_title():
    for words in _criteria("company"):
        assert "1 match by title" in words, words
        assert "company title" not in words, words
