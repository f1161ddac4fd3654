SELECT {columns} FROM solaris.accounts WHERE user_id = %(user_id)s
