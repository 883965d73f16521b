"""Processors: what runs when an occurrence fires (built-ins and plugins)."""

from reminderd.processors.base import BatchProcessor, BatchResult, Processor, ProcessorContext

__all__ = ["BatchProcessor", "BatchResult", "Processor", "ProcessorContext"]
