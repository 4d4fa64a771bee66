"""Kafka, as the project meets it: every client setting and topic (kafka.py), the embedded
broker (broker.py), the broker and worker as processes (processes.py), and the MIS SDK
(mis.py)."""
