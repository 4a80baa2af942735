"""StallWatch: when does the journal writer hold work it has not answered?"""

from __future__ import annotations

from receiver.writer.client import StallWatch


def test_nothing_sent_holds_nothing() -> None:
    assert StallWatch().held_since() is None


def test_a_request_in_flight_is_held_since_it_was_sent() -> None:
    watch = StallWatch()
    first = watch.sent(10.0)
    watch.sent(12.0)
    assert watch.held_since() == 10.0
    watch.answered(first)
    assert watch.held_since() == 12.0


def test_an_answer_shows_progress_past_everything_sent_before_it() -> None:
    watch = StallWatch()
    earlier = watch.sent(10.0)
    later = watch.sent(11.0)
    watch.answered(later)  # the writer read both in the same turn
    assert watch.held_since() is None
    watch.answered(earlier)
    assert watch.held_since() is None


def test_a_timed_out_request_is_still_held_by_the_writer() -> None:
    watch = StallWatch()
    token = watch.sent(10.0)
    watch.gave_up(token, timed_out=True)
    assert watch.held_since() == 10.0


def test_a_broken_connection_is_not_a_stall() -> None:
    watch = StallWatch()
    token = watch.sent(10.0)
    watch.gave_up(token, timed_out=False)  # the writer died: its restart deals with it
    assert watch.held_since() is None


def test_an_answer_to_a_later_request_clears_an_abandoned_one() -> None:
    watch = StallWatch()
    abandoned = watch.sent(10.0)
    watch.gave_up(abandoned, timed_out=True)
    earlier_answer = watch.sent(9.0)  # sent before the abandoned one: proves nothing
    watch.answered(earlier_answer)
    assert watch.held_since() == 10.0
    watch.answered(watch.sent(15.0))
    assert watch.held_since() is None


def test_a_new_writer_holds_nothing_and_old_answers_are_ignored() -> None:
    watch = StallWatch()
    old = watch.sent(10.0)
    watch.reset()
    assert watch.held_since() is None
    watch.answered(old)
    watch.gave_up(old, timed_out=True)
    assert watch.held_since() is None


def test_progress_on_a_large_notification_holds_it_from_then_on() -> None:
    watch = StallWatch()
    token = watch.sent(10.0)
    watch.progressed(token, 40.0)  # a chunk committed at t=40
    assert watch.held_since() == 40.0
    watch.answered(token)
    assert watch.held_since() is None


def test_progress_on_a_request_no_longer_waited_for_changes_nothing() -> None:
    watch = StallWatch()
    token = watch.sent(10.0)
    watch.answered(token)
    watch.progressed(token, 40.0)
    assert watch.held_since() is None
