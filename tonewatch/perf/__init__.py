"""Performance and fault tooling (issue #8): the trivial-model Triton, the serving ceiling, the bench."""
