-- Reservations held in the ledger now, for the solaris_active_reservations gauge.
SELECT count(*) FROM solaris.reservations WHERE state = 'pending'
