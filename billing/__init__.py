"""billing — charges, the BHYT cost split, cashless payment, claim XML and submission.
Depends on his and core only."""
