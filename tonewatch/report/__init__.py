"""The static HTML report (issue #7): a run's topics as one page of figures and tables.

``data`` turns topic records into plain series (pure), ``plots`` draws them, ``render`` writes the
page, ``read`` fetches the records from Kafka. Grafana is the live view; this is the archived one.
"""
