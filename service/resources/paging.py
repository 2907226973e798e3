"""One page of a listing, its total handed to flask-smorest for the ``X-Pagination`` header."""

from collections.abc import Callable

from flask_smorest.pagination import PaginationParameters
from sqlalchemy.orm import Session

from service.context import db

ListQuery = Callable[[Session, int, int], tuple[list, int]]


def page_of(list_query: ListQuery, pagination: PaginationParameters) -> list:
    """The rows ``list_query(session, offset, limit)`` gives for the requested page."""
    items, pagination.item_count = list_query(db(), pagination.first_item, pagination.page_size)
    return items
