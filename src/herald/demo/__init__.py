"""Herald's main demonstration: the three delivery semantics on a real cluster under faults."""
