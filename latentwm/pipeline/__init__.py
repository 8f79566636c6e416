"""What the workflow calls: the parse-time config check (check) and the job every training rule's
script runs in (job). The top layer: nothing in latentwm imports it."""
