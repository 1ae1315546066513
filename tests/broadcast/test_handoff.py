"""The set the receipt writer notes speakers in and a worker job takes whole."""

from __future__ import annotations

import threading

from broadcast.services.handoff import Handoff


def test_ids_noted_while_other_threads_take_are_each_taken_exactly_once() -> None:
    handoff = Handoff()
    writers, per_writer = 4, 5000
    taken: list[set[str]] = []
    halfway = threading.Barrier(writers + 1)
    resume = threading.Event()

    def note(writer: int) -> None:
        for i in range(per_writer):
            if i == per_writer // 2:  # the first take happens here: the second halves are noted while it goes on
                halfway.wait()
                resume.wait()
            handoff.add(f"w{writer}-{i}")

    threads = [threading.Thread(target=note, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    halfway.wait()
    taken.append(handoff.take())
    resume.set()
    while any(t.is_alive() for t in threads):
        taken.append(handoff.take())
    for thread in threads:
        thread.join()
    taken.append(handoff.take())
    assert len(taken[0]) == writers * per_writer // 2, "the first halves, taken whole"
    every = [item for batch in taken for item in batch]
    assert len(every) == len(set(every)) == writers * per_writer, "none lost, none taken twice"
    assert handoff.take() == set()


def test_a_discarded_id_is_not_taken() -> None:
    handoff = Handoff()
    for speaker in ("spk-1", "spk-2", "spk-3"):
        handoff.add(speaker)
    handoff.discard("spk-2")
    handoff.discard("never-noted")
    assert handoff.take() == {"spk-1", "spk-3"}
    assert handoff.take() == set()
