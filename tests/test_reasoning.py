"""Reasoning analysis (jrl_core.analysis; protocol §8; Jigsaw-R1 App. H, Finding 3.3; Think-or-Not-Think
§2.4): keyword detectors, judge interface, think/answer consistency, lengths, loaders, analyse()."""

import io
import json
import math
import time
import urllib.error

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jrl_core import analysis as R

# ---------------------------------------------------------------- keyword detectors


@pytest.mark.parametrize("word", ["recheck", "reverify", "reevaluate", "reexamine"])
def test_each_backtracking_keyword_is_detected(word):
    assert R.BACKTRACKING.matches(f"Let me {word} the left patch.")


def test_paper_misspelling_reexmamine_is_in_the_backtracking_list():
    assert "reexmamine" in R.BACKTRACKING.words
    assert R.BACKTRACKING.hits("I should reexmamine this.")["reexmamine"] == 1


def test_backtracking_negative_on_plain_description():
    assert not R.BACKTRACKING.matches("The top patch shows a train waiting at a station; I check the sky.")


def test_matching_is_case_insensitive():
    assert R.BACKTRACKING.matches("RECHECK") and R.BACKTRACKING.matches("ReEvaluate it")


def test_keyword_must_start_a_word():
    assert not R.BACKTRACKING.matches("this is unrecheckable")
    assert R.BACKTRACKING.matches("(recheck)") and R.BACKTRACKING.matches("x_recheck")


def test_keyword_is_a_word_prefix():
    assert R.BACKTRACKING.matches("I rechecked it") and R.BACKTRACKING.matches("after rechecking")
    assert R.BACKTRACKING.matches("reevaluated")
    assert not R.BACKTRACKING.matches("reevaluating")  # the published stem "reevaluate" is not its prefix


def test_hyphenated_variants_match_by_default_and_not_when_disabled():
    assert R.BACKTRACKING.matches("Let me re-check") and R.BACKTRACKING.matches("Re-examine the edges")
    literal = R.KeywordSet("literal", ("recheck",), hyphens=False)
    assert not literal.matches("re-check") and literal.matches("recheck")


def test_work_backwards_exact_phrase_rule():
    assert R.BACKWARD_CHAINING.matches("I can work backwards from the answer")
    assert R.BACKWARD_CHAINING.matches("Work\n  backwards")
    assert not R.BACKWARD_CHAINING.matches("I worked backwards")
    assert not R.BACKWARD_CHAINING.matches("working backwards")
    assert not R.BACKWARD_CHAINING.matches("work backward from here")


def test_visualthinker_list_matches_stems_and_its_false_positives():
    vt = R.KEYWORD_SETS["visualthinker"]
    assert vt.hits("Possibly it is B. Wait, possible? aha")["possibl"] == 2
    assert vt.matches("waiting for trains")  # the false positive Jigsaw-R1 App. H.1 avoids


def test_hits_count_every_occurrence():
    assert R.BACKTRACKING.hits("recheck, then recheck again; reverify")["recheck"] == 2


def test_keyword_set_rejects_bad_names_and_words():
    with pytest.raises(ValueError, match="column name"):
        R.KeywordSet("bad name", ("x",))
    with pytest.raises(ValueError, match="no words"):
        R.KeywordSet("empty", ())
    with pytest.raises(ValueError, match="list of keywords"):
        R.KeywordSet("s", "recheck")


def test_keyword_sets_accepts_names_mappings_and_rejects_unknown():
    sets = R.keyword_sets(["backtracking", {"mine": ["hmm"]}])
    assert [s.name for s in sets] == ["backtracking", "mine"]
    assert R.keyword_sets(None) == R.DEFAULT_KEYWORDS
    with pytest.raises(ValueError, match="unknown keyword set"):
        R.keyword_sets("nope")


def test_keyword_frequency_is_share_of_completions_with_a_hit_per_group():
    df = pd.DataFrame({"step": [0, 0, 1, 1], "completion": ["recheck recheck", "nothing", "reverify", "work backwards"]})
    freq = R.keyword_frequencies(df, by="step")
    assert freq.loc[0, "kw_backtracking"] == 0.5 and freq.loc[1, "kw_backtracking"] == 0.5
    assert freq.loc[1, "kw_backward_chaining"] == 0.5 and freq["n"].tolist() == [2, 2]


def test_keyword_table_counts():
    table = R.keyword_table(["recheck recheck", "x"], "backtracking", counts=True)
    assert table["kw_backtracking"].tolist() == [True, False]
    assert table["kw_backtracking_count"].tolist() == [2, 0]


_texts = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(["recheck", "work backwards", "Re-verify x"])), max_size=8)


@settings(max_examples=40, deadline=None)
@given(_texts, st.text(alphabet="0123456789 .,\n()", max_size=20))
def test_frequency_in_unit_interval_and_keyword_free_completion_never_raises_it(texts, clean):
    df = pd.DataFrame({"completion": texts})
    before = R.keyword_frequencies(df, by=None) if texts else None
    after = R.keyword_frequencies(pd.DataFrame({"completion": texts + [clean]}), by=None)
    for col in ("kw_backtracking", "kw_backward_chaining"):
        assert 0.0 <= after[col].iloc[0] <= 1.0
        if before is not None:
            assert after[col].iloc[0] <= before[col].iloc[0]


# ---------------------------------------------------------------- judge interface


def fake_judge(completion, question=None):
    return {"verification": "check" in completion, "backtracking": completion.count("re-"),
            "subgoal_setting": False, "Backward chaining": 0}


def test_judge_frequencies_with_a_fake_judge_by_step():
    df = pd.DataFrame({"step": [0, 0, 1], "completion": ["check", "nothing", "re-do check"]})
    freq = R.judge_frequencies(df, fake_judge, by="step")
    assert freq.loc[0, "verification"] == 0.5 and freq.loc[1, "backtracking"] == 1.0
    assert freq.loc[0, "subgoal_setting"] == 0.0 and list(freq.columns) == ["n", *R.BEHAVIOURS]


def test_judge_table_passes_the_question_column():
    seen = []
    R.judge_table(pd.DataFrame({"completion": ["a"], "question": ["Q?"]}),
                  lambda c, question=None: seen.append(question) or dict.fromkeys(R.BEHAVIOURS, 0))
    assert seen == ["Q?"]


def test_judge_missing_behaviour_is_a_clear_error():
    with pytest.raises(ValueError, match="subgoal_setting"):
        R.judge_table(["x"], lambda c, question=None: {"verification": 1, "backtracking": 0, "backward_chaining": 0})


def test_judge_on_error_skip_gives_nan():
    def broken(completion, question=None):
        raise RuntimeError("down")

    table = R.judge_table(["x", "y"], broken, on_error="skip")
    assert table.isna().all().all()
    with pytest.raises(RuntimeError):
        R.judge_table(["x"], broken)


def test_parse_judge_reply_takes_last_complete_json_in_fences():
    reply = ('Example {"verification": 0, "backtracking": 0, "subgoal_setting": 0, "backward_chaining": 0}\n'
             '```json\n{"verification": 2, "backtracking": "yes", "subgoal_setting": false, "backward_chaining": 1}\n```')
    assert R.parse_judge_reply(reply) == {"verification": 2, "backtracking": 1, "subgoal_setting": 0, "backward_chaining": 1}
    with pytest.raises(ValueError, match="no JSON object"):
        R.parse_judge_reply("I think verification is present.")
    with pytest.raises(ValueError, match="not a bool"):
        R.parse_judge_reply('{"verification": -1, "backtracking": 0, "subgoal_setting": 0, "backward_chaining": 0}')


def test_judge_prompt_file_loads_without_comment_and_fills_literally():
    template = R.load_judge_prompt()
    assert "<!--" not in template and "{{completion}}" in template
    filled = R.fill_judge_prompt(template, completion="a {b} {{question}}", question=None)
    assert "a {b} {{question}}" in filled and "{{completion}}" not in filled


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def test_openai_judge_builds_the_request_and_parses_the_reply(monkeypatch):
    captured = {}

    def fake_urlopen(req, timeout):
        captured.update(url=req.full_url, body=json.loads(req.data), headers=dict(req.header_items()), timeout=timeout)
        content = 'Sure:\n{"verification": 1, "backtracking": 0, "subgoal_setting": 3, "backward_chaining": 0}'
        return _Response(json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    judge = R.OpenAIJudge("http://localhost:8000/v1/", "gpt-4.1", api_key="sk-test", timeout=5)
    assert judge("<think>check</think>", question="Q") == {
        "verification": 1, "backtracking": 0, "subgoal_setting": 3, "backward_chaining": 0}
    assert captured["url"] == "http://localhost:8000/v1/chat/completions" and captured["timeout"] == 5
    assert captured["body"]["model"] == "gpt-4.1" and captured["body"]["temperature"] == 0.0
    message = captured["body"]["messages"][0]
    assert message["role"] == "user" and "<think>check</think>" in message["content"] and "\nQ\n" in message["content"]
    assert captured["headers"]["Authorization"] == "Bearer sk-test"
    assert "sk-test" not in repr(judge)


def test_openai_judge_http_error_and_bad_response_are_clear(monkeypatch):
    def http_error(req, timeout):
        raise urllib.error.HTTPError(req.full_url, 401, "Unauthorized", {}, io.BytesIO(b'{"error": "bad key"}'))

    monkeypatch.setattr("urllib.request.urlopen", http_error)
    with pytest.raises(RuntimeError, match="HTTP 401.*bad key"):
        R.OpenAIJudge("http://x/v1", "m")("text")
    monkeypatch.setattr("urllib.request.urlopen", lambda req, timeout: _Response(b'{"nope": 1}'))
    with pytest.raises(ValueError, match="choices"):
        R.OpenAIJudge("http://x/v1/chat/completions", "m")("text")


def test_hf_judge_is_lazy():
    judge = R.HFJudge("/nonexistent/model")
    assert judge._model is None and "loaded=False" in repr(judge)


# ---------------------------------------------------------------- consistency


def test_letter_answer_phrase_wins_over_later_parenthesised_letter():
    text = "<think>The answer is (B). Option (C) describes the sky.</think><answer>B</answer>"
    assert R.reasoning_answer(text, "letter") == "B"
    assert R.consistency(text, "letter") == "consistent"


def test_letter_parenthesised_when_no_phrase_and_line_start_choice_labels_ignored():
    text = "<think>Choices:\n(A) 1 is left of 2\n(B) 1 is right of 2\nPatch 1 shows the tail, so (B) fits.</think><answer>A</answer>"
    assert R.reasoning_answer(text, "letter") == "B"
    assert R.consistency(text, "letter") == "inconsistent"
    listing_only = "<think>\n(A) 1 is left of 2\n(B) 1 is right of 2\n</think><answer>A</answer>"
    assert R.reasoning_answer(listing_only, "letter") is None


def test_letter_standalone_skips_pronoun_and_article():
    assert R.reasoning_answer("<think>A patch shows a dog. I think it is C here.</think>", "letter") == "C"
    assert R.reasoning_answer("<think>A cat sits. I see a tree.</think>", "letter") is None


def test_letter_undetermined_without_reasoning_or_answer():
    assert R.consistency("<answer>B</answer>", "letter") == "undetermined"
    assert R.consistency("<think>no letters here</think><answer>B</answer>", "letter") == "undetermined"
    assert R.consistency("<think>answer is B</think>", "letter") == "undetermined"


def test_base_model_reasoning_without_opening_tag():
    assert R.reasoning_answer("the answer is D</think><answer>D</answer>", "letter") == "D"


def test_digit_phrase_then_last_number():
    text = "<think>In this 2x1 puzzle patch 1 is sky; the answer is position 2, not 1.</think><answer>2</answer>"
    assert R.reasoning_answer(text, "digit") == 2 and R.consistency(text, "digit") == "consistent"
    assert R.reasoning_answer("<think>patch 3 goes to 4. Then 1.</think>", "digit") == 1
    assert R.consistency("<think>It goes to the 3rd spot in the 2x1 grid</think><answer>3</answer>", "digit") == "undetermined"


def test_grid_last_run_of_right_length():
    text = "<think>The grid is\n1 2\n3 4\nbut the edges say\n2 1\n4 3\nso done.</think><answer>2 1\n4 3</answer>"
    assert R.reasoning_answer(text, "grid", 2, 2) == [2, 1, 4, 3]
    assert R.consistency(text, "grid", 2, 2) == "consistent"
    assert R.reasoning_answer("<think>[[3, 1], [2, 4]] then patch 7</think>", "grid", 2, 2) == [3, 1, 2, 4]
    assert R.consistency("<think>1 2 3\nthen 4 1 2 3</think><answer>4 1 2 3</answer>", "grid", 2, 2) == "consistent"
    assert R.consistency("<think>2 1 4 3</think><answer>1 2 3 4</answer>", "grid", 2, 2) == "inconsistent"


def test_grid_undetermined_when_no_run_fits():
    assert R.consistency("<think>patches 5 6 7 8 and 2x2</think><answer>1 2 3 4</answer>", "grid", 2, 2) == "undetermined"
    with pytest.raises(ValueError, match="m and n"):
        R.consistency("<think>1 2</think>", "grid")


def test_unknown_answer_type_raises():
    with pytest.raises(ValueError, match="answer_type"):
        R.consistency("x", "colour")


def test_consistency_summary_shares_and_accuracies():
    df = pd.DataFrame({
        "completion": ["<think>answer is A</think><answer>A</answer>",      # consistent, correct
                       "<think>answer is B</think><answer>A</answer>",      # inconsistent, tag correct
                       "<think>answer is A</think><answer>B</answer>",      # inconsistent, think correct
                       "<answer>A</answer>"],                               # undetermined
        "answer_type": "letter", "m": 2, "n": 1, "solution": "A", "step": [0, 0, 0, 0]})
    table = R.consistency_table(df)
    assert table["consistency"].tolist() == ["consistent", "inconsistent", "inconsistent", "undetermined"]
    summary = R.consistency_summary(df).iloc[0]
    assert summary["consistent_share"] == pytest.approx(1 / 3) and summary["undetermined_share"] == 0.25
    assert summary["accuracy_consistent"] == 1.0 and summary["accuracy_inconsistent"] == 0.5
    assert summary["reasoning_accuracy_inconsistent"] == 0.5


@pytest.mark.parametrize("unit", ["<think>", "<reason>", "(A", "\n(A)", "answer ", "answer is option ", "1", "1,", "1 ",
                                  "A ", " "])
def test_consistency_reads_a_megabyte_of_adversarial_reasoning_in_linear_time(unit):
    body = unit * ((1 << 20) // len(unit))
    frame = pd.DataFrame({"completion": [body, f"<think>{body}</think><answer>A</answer>", f"{body}</think>"] * 2,
                          "answer_type": ["letter"] * 3 + ["box"] * 3, "m": None, "n": None, "solution": "A"})
    start = time.perf_counter()
    R.consistency_table(frame.iloc[:3])
    R.consistency_table(frame.iloc[3:].assign(solution="1,2,3,4"))
    R.consistency(f"<think>{body}</think><answer>1 2 3 4</answer>", "grid", 2, 2)
    R.consistency(f"<think>{body}</think><answer>3</answer>", "digit")
    assert time.perf_counter() - start < 5.0


# ---------------------------------------------------------------- lengths


def test_length_stats_from_columns_and_tokenizer():
    df = pd.DataFrame({"step": [0, 0, 1], "completion": ["ab", "abcd", "a b c"]})
    stats = R.length_stats(df, by="step", tokenizer=str.split)
    assert stats.loc[0, "chars_mean"] == 3.0 and stats.loc[0, "chars_median"] == 3.0
    assert stats.loc[0, "chars_p90"] == pytest.approx(3.8) and stats.loc[1, "tokens_mean"] == 3.0
    logged = R.length_stats(df.assign(length_tokens=[10, 20, 30]), by=None)
    assert logged.iloc[0]["tokens_median"] == 20.0
    assert "tokens_mean" not in R.length_stats(df, by=None).columns


# ---------------------------------------------------------------- loaders


def _record(step, completion, acc, **extra):
    base = {"step": step, "prompt_id": f"p{step}", "completion": completion, "rewards": {"accuracy": acc, "format": 1.0},
            "advantage": 0.0, "length_tokens": len(completion.split()), "length_chars": len(completion), "solution": "A",
            "answer_type": "letter", "m": 2, "n": 1, "think": True, "question_type": "pair", "mode": "thinking"}
    return json.dumps({**base, **extra})


def test_load_completion_log_flattens_rewards_and_adds_size(tmp_path):
    log = tmp_path / "run" / "logs" / "completions.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text(_record(0, "<think>recheck</think><answer>A</answer>", 1.0) + "\n\n"
                   + _record(1, "<answer>B</answer>", 0.0, m=3) + "\n")
    df = R.load_completion_log(tmp_path / "run")
    assert len(df) == 2 and df["reward_accuracy"].tolist() == [1.0, 0.0]
    assert df["size"].tolist() == ["2x1", "3x1"] and df["source"].tolist() == ["logs", "logs"]
    assert "rewards" not in df.columns


def test_load_completion_log_malformed_line_names_file_and_line(tmp_path):
    log = tmp_path / "completions.jsonl"
    log.write_text(_record(0, "x", 1.0) + "\n" + '{"step": 1, "completion": "cut' + "\n" + _record(2, "y", 0.0) + "\n")
    with pytest.raises(ValueError, match=r"completions\.jsonl, line 2: malformed JSON"):
        R.load_completion_log(tmp_path)
    log.write_text('{"step": 1}\n')
    with pytest.raises(ValueError, match="line 1: no 'completion'"):
        R.load_completion_log(tmp_path)


def test_load_completion_log_skips_a_torn_last_line(tmp_path):
    (tmp_path / "completions.jsonl").write_text(_record(0, "x", 1.0) + "\n" + '{"step": 1, "completion": "cut')
    assert R.load_completion_log(tmp_path)["step"].tolist() == [0]


def test_load_completion_log_keeps_columns_of_older_logs(tmp_path):
    (tmp_path / "completions.jsonl").write_text(_record(0, "x", 1.0) + "\n")
    assert R.load_completion_log(tmp_path)["think"].tolist() == [True]


def test_load_completion_log_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no completions.jsonl under"):
        R.load_completion_log(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        R.load_completion_log(tmp_path / "nope")


def test_load_eval_outputs_adds_source_size_and_answer_type(tmp_path):
    table = pd.DataFrame({"image_id": ["i0", "i1"], "m": [2, 2], "n": [1, 1], "question_type": ["pair", "pair"],
                          "solution": ["A", "B"], "completion": ["A", ""], "score": [1.0, 0.0], "correct": [1.0, 0.0],
                          "format": [1.0, 0.0], "letter": ["A", None]})
    table.to_csv(tmp_path / "eval_before.csv", index=False)
    table.to_csv(tmp_path / "eval_after.csv", index=False)
    (tmp_path / "other.csv").write_text("x\n1\n")
    df = R.load_eval_outputs(tmp_path)
    assert sorted(set(df["source"])) == ["eval_after", "eval_before"] and len(df) == 4
    assert set(df["size"]) == {"2x1"} and set(df["answer_type"]) == {"letter"}
    assert df["completion"].tolist()[1] == ""
    (tmp_path / "eval_bad.csv").write_text("image_id,m\ni,2\n")
    with pytest.raises(ValueError, match=r"eval_bad\.csv lacks columns"):
        R.load_eval_outputs(tmp_path)


# ---------------------------------------------------------------- analyse


def test_analyse_groups_training_log_by_step(tmp_path):
    lines = [_record(0, "<think>answer is A</think><answer>A</answer>", 1.0),
             _record(0, "<think>recheck: answer is B</think><answer>A</answer>", 1.0),
             _record(1, "<think>I work backwards, answer is B</think><answer>B</answer>", 0.0)]
    (tmp_path / "completions.jsonl").write_text("\n".join(lines) + "\n")
    out = R.analyse(R.load_completion_log(tmp_path), by="step", judge=fake_judge)
    assert out.index.tolist() == [0, 1] and out["n"].tolist() == [2, 1]
    assert out.loc[0, "accuracy"] == 1.0 and out.loc[1, "accuracy"] == 0.0
    assert out.loc[0, "kw_backtracking"] == 0.5 and out.loc[1, "kw_backward_chaining"] == 1.0
    assert out.loc[0, "consistent_share"] == 0.5 and out.loc[1, "accuracy_consistent"] == 0.0
    assert out.loc[0, "tokens_mean"] == pytest.approx(3.5) and "judge_verification" in out.columns
    by_size = R.analyse(R.load_completion_log(tmp_path), by="size")
    assert by_size.index.tolist() == ["2x1"] and by_size.loc["2x1", "n"] == 3


def test_analyse_eval_outputs_by_source_and_missing_column_error():
    df = pd.DataFrame({"source": ["a", "b"], "completion": ["A", "recheck B"], "score": [1.0, 0.0],
                       "m": [2, 2], "n": [1, 1], "question_type": ["pair", "pair"], "solution": ["A", "A"]})
    out = R.analyse(df, by="source")
    assert out.loc["a", "accuracy"] == 1.0 and out.loc["b", "kw_backtracking"] == 1.0
    assert math.isnan(out.loc["a", "consistent_share"]) and out.loc["a", "undetermined_share"] == 1.0
    with pytest.raises(ValueError, match="cannot group by"):
        R.analyse(df, by="step")


def test_summary_metrics_give_first_and_last_step_and_keywords_by_size():
    by_step = pd.DataFrame({"accuracy": [0.4, 0.7], "consistent_share": [1.0, 0.5], "tokens_mean": [40.0, 30.0]},
                           index=pd.Index([1, 2], name="step"))
    by_size = pd.DataFrame({"n": [8, 8], "kw_backtracking": [0.25, 0.5]}, index=pd.Index(["2x1", "3x1"], name="train_size"))
    m = R.summary_metrics(by_step, by_size)
    assert (m["accuracy_first_step"], m["accuracy_last_step"]) == (0.4, 0.7)
    assert (m["consistency_last_step"], m["tokens_last_step"]) == (0.5, 30.0)
    assert m["kw_backtracking_by_size_3x1"] == 0.5 and "n_by_size_2x1" not in m
