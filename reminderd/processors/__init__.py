"""Processors: what runs when an occurrence fires (built-ins and plugins)."""

from reminderd.processors.base import Processor, ProcessorContext

__all__ = ["Processor", "ProcessorContext"]
