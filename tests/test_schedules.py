import pytest

from gpt2_sweep.runner.schedules import (BOTH_OFF_WARNING, BOTH_ON_PAIRED_WARNING, SEVERAL_PAIRED_WARNING, Setting,
                                         settings_in_use, sweep_settings)


def settings(temperature, nucleus, n, schedule="paired", t_range=(0.0, 1.2), p_range=(0.0, 1.0), **more):
    sweeps = {"temperature": temperature, "nucleus": nucleus, **{k: True for k in more if not k.endswith("value")}}
    ranges = {"temperature": t_range, "nucleus": p_range, **{k: v for k, v in more.items() if not k.endswith("value")}}
    values = {k.removesuffix("_value"): v for k, v in more.items() if k.endswith("value")}
    return sweep_settings(sweeps, ranges, values, n, schedule)


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


def test_an_axis_that_is_not_swept_takes_its_fixed_value_without_a_warning():
    result, notes = settings(False, True, 3, p_range=(0.2, 0.8), temperature_value=0.7)
    assert result == [Setting(0.7, p) for p in (0.2, 0.5, 0.8)] and notes == []
    assert settings(True, False, 2, min_p_value=0.1, top_k_value=40)[0] == [Setting(0.0, 1.0, 40, 0.1),
                                                                          Setting(1.2, 1.0, 40, 0.1)]


def test_top_k_is_swept_in_whole_numbers_and_min_p_beside_it():
    result, notes = settings(False, False, 4, top_k=(1, 10))
    assert [s.top_k for s in result] == [1, 4, 7, 10] and notes == []
    result, notes = settings(False, False, 3, min_p=(0.0, 0.2), top_k=(1, 3))
    assert [(s.top_k, s.min_p) for s in result] == [(1, 0.0), (2, 0.1), (3, 0.2)]
    assert notes == [SEVERAL_PAIRED_WARNING.format(count=2, names="top_k, min_p")]


def test_a_grid_of_three_axes_takes_every_combination():
    result, notes = settings(True, True, 3, "grid", top_k=(1, 50))
    assert len(result) == 27 and len(set(result)) == 27 and notes == []
    assert result[0] == Setting(0.0, 0.0, 1, 0.0) and result[-1] == Setting(1.2, 1.0, 50, 0.0)


def test_top_k_values_are_rounded_half_up():
    result, _ = settings(False, False, 3, top_k=(5, 40))
    assert [s.top_k for s in result] == [5, 23, 40]  # 22.5 -> 23, not 22 (half to even)
    result, _ = settings(False, False, 4, top_k=(0, 3))
    assert [s.top_k for s in result] == [0, 1, 2, 3]


def test_the_schedule_is_paired_unless_asked_and_two_identical_samples_get_the_warning():
    paired, _ = sweep_settings({"temperature": True, "nucleus": True}, {"temperature": (0.0, 1.0), "nucleus": (0.0, 1.0)},
                               {}, 3)
    assert [(s.temperature, s.nucleus) for s in paired] == [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)]
    assert settings(False, False, 2)[1] == [BOTH_OFF_WARNING.format(num_samples=2)]
    top_ks = [s.top_k for s in settings(False, False, 3, top_k=(1, 2))[0]]
    assert top_ks == [1, 2, 2] and all(type(k) is int for k in top_ks)  # rounded, half up


def test_an_artifact_names_temperature_and_nucleus_always_other_axes_where_swept_or_set():
    neutral = [Setting(), Setting()]
    assert settings_in_use(neutral, {}) == ["temperature", "nucleus"]
    assert settings_in_use(neutral, {"top_k": True}) == ["temperature", "nucleus", "top_k"]
    assert settings_in_use([Setting(), Setting(min_p=0.1)], {}) == ["temperature", "nucleus", "min_p"]
