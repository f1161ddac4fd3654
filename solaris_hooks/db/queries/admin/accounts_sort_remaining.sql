credited_tokens - debited_tokens - reserved_tokens
