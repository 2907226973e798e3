from bench.uploads import MB, Target, UploadRun, grouped, in_turn, report


def run(tree: str, seconds: float, peak_mb: float = 100, file_format: str = "csv") -> UploadRun:
    return UploadRun(tree, file_format, 200_000, int(100 * MB), seconds, 0, int(peak_mb * MB))


def test_the_trees_take_turns_the_first_alternating():
    before, after = Target("embedded", "", tree=None), Target("postgres", "")
    assert [in_turn([before, after], repeat) for repeat in range(3)] == [
        [before, after],
        [after, before],
        [before, after],
    ]


def test_uploads_are_grouped_by_tree_and_format_in_first_run_order():
    runs = [run("b", 1.0), run("a", 2.0), run("b", 3.0), run("b", 4.0, file_format="npz")]
    groups = grouped(runs)
    assert [[one.seconds for one in group.runs] for group in groups] == [[1.0, 3.0], [2.0], [4.0]]


def test_the_median_the_spread_and_the_counts_of_targets_met():
    runs = [run("this tree", 0.8, peak_mb=150), run("this tree", 1.25), run("this tree", 1.0)]
    group = grouped(runs)[0]
    assert group.median_seconds() == 1.0
    assert group.median_mb_per_second() == 100.0
    assert group.largest_peak().memory_ratio == 1.5
    line = report(runs, "embedded", 0.5).splitlines()[-1]
    assert "| 3 | 1.00 s (0.80 to 1.25 s) | 100 |" in line
    assert "| 150 MB | 1.50x | met | 2 of 3 met |" in line


def test_one_upload_has_no_spread():
    line = report([run("this tree", 2.0, peak_mb=250)], "postgres", 0.5).splitlines()[-1]
    assert "| 1 | 2.00 s | 50 |" in line
    assert "| 2.50x | **not met** | **not met** |" in line
