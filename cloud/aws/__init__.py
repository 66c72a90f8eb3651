"""Every call to AWS: sessions and keys, S3, EC2, quotas, the IAM policy, budgets, set-up."""
