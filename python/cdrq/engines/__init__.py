"""The plan beyond Polars: ``sql`` (``cdrq.to_sql``, any sqlglot dialect)
and ``spark`` (the cdrq data source, ``to_spark``, ``spark_query``)."""
