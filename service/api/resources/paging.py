"""One page of a listing, its total handed to flask-smorest for the ``X-Pagination`` header."""

from collections.abc import Callable

import flask_smorest
from flask_smorest.pagination import PaginationParameters
from sqlalchemy.orm import Session

from service.api.context import db

ListQuery = Callable[[Session, int, int], tuple[list, int]]

PAGINATION_HEADER_DOC = {
    "description": "The page's place in the listing, as a JSON object in the header's text:"
    " total, total_pages, first_page, last_page, page, and previous_page and next_page when"
    " there are such pages",
    "schema": {
        "type": "string",
        "example": '{"total": 25, "total_pages": 3, "first_page": 1, "last_page": 3,'
        ' "page": 2, "previous_page": 1, "next_page": 3}',
    },
}


class PagedBlueprint(flask_smorest.Blueprint):
    """A Blueprint whose listings document ``X-Pagination`` as what it is on the wire: a string
    (of JSON), where flask-smorest documents the object inside it."""

    def _document_pagination_metadata(self, spec, resp_doc):
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = PAGINATION_HEADER_DOC


def page_of(list_query: ListQuery, pagination: PaginationParameters) -> list:
    """The rows ``list_query(session, offset, limit)`` gives for the requested page."""
    items, pagination.item_count = list_query(db(), pagination.first_item, pagination.page_size)
    return items
