debited_tokens::numeric / greatest(credited_tokens, 1)
