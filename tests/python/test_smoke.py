from conftest import binary, run


def test_cli_builds_and_runs():
    r = run([binary("tern"), "--help"])
    assert r.returncode == 0
