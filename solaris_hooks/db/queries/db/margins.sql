SELECT model, margin, excess_tokens FROM solaris.model_margins
