SELECT {columns} {rows} ORDER BY {order_by} LIMIT %(limit)s OFFSET %(offset)s
