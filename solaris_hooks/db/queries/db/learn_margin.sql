SELECT margin, excess_tokens
  FROM solaris.learn_margin(%(model)s, %(reported_tokens)s, %(estimated_tokens)s, %(ratio_sample_tokens_min)s)
