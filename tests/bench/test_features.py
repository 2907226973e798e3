from bench.features import Backend, in_round_order


def backends(*databases: str) -> list[Backend]:
    return [Backend(database, {}, [], []) for database in databases]


def test_each_round_loads_every_backend_and_starts_one_further_along():
    both = backends("embedded", "postgres")
    rounds = [[b.database for b in in_round_order(both, number)] for number in (1, 2, 3)]
    assert rounds == [["embedded", "postgres"], ["postgres", "embedded"], ["embedded", "postgres"]]


def test_a_single_backend_is_every_round():
    one = backends("postgres")
    assert [in_round_order(one, number) for number in (1, 2)] == [one, one]
