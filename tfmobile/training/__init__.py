"""Label-smoothed loss, inverse-sqrt schedule, and the model.fit glue (`train`, `load_run`)."""
