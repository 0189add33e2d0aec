import pytest

from gpt2_sweep.schedules import BOTH_OFF_WARNING, BOTH_ON_PAIRED_WARNING, Setting, sweep_settings


def settings(temperature, nucleus, n, schedule="paired", t_range=(0.0, 1.2), p_range=(0.0, 1.0)):
    return sweep_settings(temperature, nucleus, t_range, p_range, n, schedule)


def test_temperature_sweep_is_a_linspace_and_nucleus_stays_one():
    result, notes = settings(True, False, 4)
    assert result == [Setting(t, 1.0) for t in (0.0, 0.4, 0.8, 1.2)] and notes == []


def test_nucleus_sweep_is_a_linspace_and_temperature_stays_one():
    result, notes = settings(False, True, 3, p_range=(0.2, 0.8))
    assert result == [Setting(1.0, p) for p in (0.2, 0.5, 0.8)] and notes == []


def test_both_on_pairs_index_by_index_with_a_warning():
    result, notes = settings(True, True, 3)
    assert result == [Setting(0.0, 0.0), Setting(0.6, 0.5), Setting(1.2, 1.0)]
    assert notes == [BOTH_ON_PAIRED_WARNING]


def test_both_off_gives_num_samples_identical_settings_with_a_warning():
    """As the original script: num_samples samples at temperature 1.0 and nucleus 1.0."""
    result, notes = settings(False, False, 5)
    assert result == [Setting(1.0, 1.0)] * 5
    assert notes == [BOTH_OFF_WARNING.format(num_samples=5)]
    assert "identical" in notes[0] and "sampler=temperature" in notes[0]
    assert settings(False, False, 5, "grid") == (result, notes)
    assert settings(False, False, 1) == ([Setting(1.0, 1.0)], [])


def test_grid_takes_every_combination_temperature_major():
    result, notes = settings(True, True, 2, "grid")
    assert result == [Setting(0.0, 0.0), Setting(0.0, 1.0), Setting(1.2, 0.0), Setting(1.2, 1.0)]
    assert notes == []
    assert settings(True, False, 3, "grid")[0] == settings(True, False, 3)[0]


def test_one_sample_takes_the_range_start_and_ranges_may_descend():
    assert settings(True, True, 1)[0] == [Setting(0.0, 0.0)]
    assert settings(True, False, 3, t_range=(1.0, 0.0))[0] == [Setting(t, 1.0) for t in (1.0, 0.5, 0.0)]


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_sample_count(n):
    assert len(settings(True, True, n)[0]) == n
    assert len(settings(True, True, n, "grid")[0]) == n * n
