"""What a resumable batch records: the journal protocols, their values and the stores that keep them."""
