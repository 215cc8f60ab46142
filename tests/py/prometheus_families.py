"""Reads a Prometheus text exposition on standard input with the official Python client's
parser (not our code) and prints what it found as JSON: one object per metric family with its
name, type, help text and samples (name, labels, value). A text the parser refuses makes this
exit non-zero with the parser's message."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append(
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [
                {"name": sample.name, "labels": sample.labels, "value": sample.value}
                for sample in family.samples
            ],
        }
    )
json.dump(families, sys.stdout)
