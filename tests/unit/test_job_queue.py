import threading

from modelyard.providers.llamacpp.job_queue import JobQueue


def test_admits_one_running_plus_depth_waiting() -> None:
    queue: JobQueue[str] = JobQueue(depth=2)
    assert queue.offer("a") and queue.offer("b") and queue.offer("c")
    assert not queue.offer("d")
    assert queue.take() == "a"  # now busy with a; b and c wait
    assert not queue.offer("d")
    assert queue.take() == "b"  # a finished, b running, c waiting
    assert queue.offer("d")
    assert not queue.offer("e")


def test_depth_zero_admits_only_when_idle() -> None:
    queue: JobQueue[str] = JobQueue(depth=0)
    assert queue.offer("a")
    assert not queue.offer("b")
    assert queue.take() == "a"
    assert not queue.offer("b")


def test_jobs_come_out_in_arrival_order() -> None:
    queue: JobQueue[int] = JobQueue(depth=10)
    for job in range(5):
        assert queue.offer(job)
    assert [queue.take() for _ in range(5)] == [0, 1, 2, 3, 4]


def test_close_wakes_the_worker_and_returns_unstarted_jobs() -> None:
    queue: JobQueue[str] = JobQueue(depth=3)
    results: list[str | None] = []
    waiter = threading.Thread(target=lambda: results.append(queue.take()))
    waiter.start()
    assert queue.offer("x")
    waiter.join(5)
    assert results == ["x"]
    queue.offer("y")
    assert queue.close() == ["y"]
    assert queue.take() is None
    assert not queue.offer("z")
