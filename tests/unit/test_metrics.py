from kernel.metrics import Registry


def test_prometheus_text_format() -> None:
    registry = Registry()
    c = registry.counter("x_total", "Things.")
    c.inc(outcome="ok")
    c.inc(2, outcome="ok")
    registry.gauge("lag", "Lag.", lambda: [({"topic": 't"q', "partition": "0"}, 5.0)])
    h = registry.histogram("secs", "Seconds.", (0.1, 1.0))
    h.observe(0.05)
    h.observe(0.5)
    text = registry.render()
    assert '# TYPE x_total counter\nx_total{outcome="ok"} 3.0' in text
    assert 'lag{partition="0",topic="t\\"q"} 5.0' in text
    assert 'secs_bucket{le="0.1"} 1' in text and 'secs_bucket{le="+Inf"} 2' in text and "secs_count 2" in text


def test_listener_counts_outcomes() -> None:
    import asyncio

    from ingest.listener import IngestTopics, Listener
    from ingest.sink import ListSink
    from tests import samples

    listener = Listener(ListSink(), IngestTopics("r", "d"))
    asyncio.run(listener.handle(samples.ORU_EN_NARRATIVE, "p"))
    asyncio.run(listener.handle(samples.NOT_HL7, "p"))
    text = listener.metrics.render()
    assert 'radflow_ingest_messages_total{outcome="accepted"} 1' in text
    assert 'radflow_ingest_messages_total{outcome="dead_lettered"} 1' in text
    assert "radflow_ingest_ack_seconds_count 2" in text
