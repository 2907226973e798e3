"""Small predictions in turns (service/api/turns.py): at most the turns' size inside the app at
once, the others let in first come first served, every other request straight through."""

import threading
import time

import pytest

from service.api.turns import SMALL_BODY_BYTES, PredictionTurns, Turns, takes_a_turn

PREDICT = {
    "REQUEST_METHOD": "POST",
    "PATH_INFO": "/v1/models/digits@production/predict",
    "CONTENT_LENGTH": "120",
}


def environ(**changes: str) -> dict:
    return {**PREDICT, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"PATH_INFO": "/v2/models/digits/infer"},
        {"PATH_INFO": "/v2/models/digits/versions/3/infer"},
        {"CONTENT_LENGTH": str(SMALL_BODY_BYTES)},
    ],
)
def test_a_small_prediction_takes_a_turn(changes):
    assert takes_a_turn(environ(**changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"REQUEST_METHOD": "GET"},
        {"PATH_INFO": "/v1/datasets"},
        {"PATH_INFO": "/v1/models/digits/evaluate"},
        {"PATH_INFO": "/v1/jobs/3/events"},
        {"CONTENT_LENGTH": str(SMALL_BODY_BYTES + 1)},  # a large infer: BLAS, not the GIL
        {"CONTENT_LENGTH": ""},  # chunked: its length unknown
    ],
)
def test_anything_else_goes_straight_on(changes):
    assert not takes_a_turn(environ(**changes))


class HeldApp:
    """A WSGI app each request of which waits inside until its own event is set."""

    def __init__(self):
        self.inside: list[str] = []
        self.entered: list[str] = []
        self.most_inside = 0
        self.lock = threading.Lock()
        self.release: dict[str, threading.Event] = {}
        self.closed: list[str] = []

    def __call__(self, environ: dict, start_response) -> "Body":
        name = environ["name"]
        with self.lock:
            self.inside.append(name)
            self.entered.append(name)
            self.most_inside = max(self.most_inside, len(self.inside))
        assert self.release[name].wait(10)
        with self.lock:
            self.inside.remove(name)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(name, self.closed)


class Body:
    def __init__(self, name: str, closed: list[str]):
        self.name = name
        self.closed = closed

    def __iter__(self):
        yield self.name.encode()
        yield b"!"

    def close(self) -> None:
        self.closed.append(self.name)


def start(turned: PredictionTurns, app: HeldApp, name: str, answers: dict, **changes):
    app.release[name] = threading.Event()

    def call() -> None:
        answers[name] = turned(environ(name=name, **changes), lambda *args: None)

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def wait_until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_turns_let_in_at_most_their_size_first_come_first_served():
    app = HeldApp()
    turned = PredictionTurns(app, 2)
    answers: dict = {}
    threads = []
    for count, name in enumerate("abcde", 1):  # each in or queued before the next starts
        threads.append(start(turned, app, name, answers))
        wait_until(lambda count=count: len(app.entered) + len(turned.turns.waiting) == count)
    assert app.inside == ["a", "b"]
    for name, entered in zip("bacde", (3, 4, 5, 5, 5), strict=True):
        app.release[name].set()
        wait_until(lambda entered=entered: len(app.entered) == entered)  # the longest waiter
    for thread in threads:
        thread.join(10)
    assert app.entered == list("abcde")
    assert app.most_inside == 2
    assert answers == {name: [f"{name}!".encode()] for name in "abcde"}
    assert sorted(app.closed) == list("abcde")
    assert turned.turns.free == 2 and not turned.turns.waiting


def one_turn_held(name: str) -> tuple[HeldApp, PredictionTurns, dict, threading.Thread]:
    """One turn, taken by the request ``name``, held inside the app until released."""
    app = HeldApp()
    turned = PredictionTurns(app, 1)
    answers: dict = {}
    thread = start(turned, app, name, answers)
    wait_until(lambda: app.inside == [name])
    return app, turned, answers, thread


def test_the_body_is_read_and_closed_before_the_turn_passes_on():
    app, turned, answers, first = one_turn_held("first")
    second = start(turned, app, "second", answers)
    wait_until(lambda: len(turned.turns.waiting) == 1)
    app.release["first"].set()
    wait_until(lambda: app.inside == ["second"])
    assert app.closed == ["first"] and answers["first"] == [b"first!"]
    app.release["second"].set()
    first.join(10)
    second.join(10)


def test_other_requests_do_not_wait_for_a_turn():
    app, turned, answers, held = one_turn_held("held")
    large = start(turned, app, "large", answers, CONTENT_LENGTH=str(SMALL_BODY_BYTES + 1))
    listing = start(turned, app, "listing", answers, REQUEST_METHOD="GET")
    wait_until(lambda: sorted(app.inside) == ["held", "large", "listing"])
    for name in ("held", "large", "listing"):
        app.release[name].set()
    for thread in (held, large, listing):
        thread.join(10)
    assert app.most_inside == 3


def test_a_turn_is_handed_on_when_the_app_raises():
    def failing(environ, start_response):
        raise RuntimeError("the view failed")

    turned = PredictionTurns(failing, 1)
    with pytest.raises(RuntimeError):
        turned(environ(), lambda *args: None)
    assert turned.turns.free == 1


def test_a_holder_leaving_hands_its_place_to_the_longest_waiter():
    turns = Turns(1)
    order: list[int] = []
    turns.__enter__()
    threads = []
    for number in range(3):

        def wait_for_turn(number=number) -> None:
            with turns:
                order.append(number)

        threads.append(threading.Thread(target=wait_for_turn))
        threads[-1].start()
        wait_until(lambda number=number: len(turns.waiting) == number + 1)
    turns.__exit__(None, None, None)
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2] and turns.free == 1
