SELECT count(*) AS total {rows}
