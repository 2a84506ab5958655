"""The Train page: a short real training run started from the page, stopped or finished."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _train_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def test_training_from_the_page_registers_the_model_for_the_session():
    at = _train_page()
    at.selectbox(key="train.family").set_value("story-memn2n").run()
    at.multiselect(key="train.tasks").set_value([1])
    at.number_input(key="train.stories").set_value(60)
    at.number_input(key="train.epochs").set_value(1)
    at.number_input(key="train.size.story-memn2n.dim").set_value(8)
    at.button(key="train.start").click().run()
    assert not at.exception, at.exception
    job = at.session_state["train.job"]
    job.join(timeout=120)
    assert not job.running and job.error is None, job.error
    at.run()
    assert not at.exception, at.exception
    trained = at.session_state["session.trained_models"]
    assert len(trained) == 1
    (folder,) = trained.values()
    assert (Path(folder) / "model.safetensors").is_file()
    assert any("Trained story-memn2n" in s.value for s in at.success)
    assert at.get("plotly_chart"), "no training curves drawn"


def test_stopping_early_keeps_the_model_so_far():
    at = _train_page()
    at.selectbox(key="train.family").set_value("story-entnet").run()
    at.multiselect(key="train.tasks").set_value([1])
    at.number_input(key="train.stories").set_value(2000)
    at.number_input(key="train.epochs").set_value(50)
    at.number_input(key="train.size.story-entnet.dim").set_value(8)
    at.number_input(key="train.size.story-entnet.slots").set_value(2)
    at.button(key="train.start").click().run()
    job = at.session_state["train.job"]
    job.stop()
    job.join(timeout=120)
    assert not job.running and job.error is None, job.error
    assert job.result.stopped_early
    at.run()
    assert any("stopped early" in s.value for s in at.success)


def test_no_task_chosen_is_refused_with_a_message():
    at = _train_page()
    at.multiselect(key="train.tasks").set_value([])
    at.button(key="train.start").click().run()
    assert not at.exception, at.exception
    assert any("at least one task" in e.value for e in at.error)
    assert "train.job" not in at.session_state


def test_choices_survive_a_page_switch_and_buttons_stay_usable():
    at = _train_page()
    at.selectbox(key="train.family").set_value("story-memn2n").run()
    at.multiselect(key="train.tasks").set_value([2]).run()
    at.button(key="train.start").click().run()  # a button whose key is under "train."
    job = at.session_state["train.job"]
    job.stop()
    job.join(timeout=120)
    at.switch_page("pages/attention.py").run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train.family").value == "story-memn2n"
    assert at.multiselect(key="train.tasks").value == [2]
