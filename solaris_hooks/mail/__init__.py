"""Alert e-mails: the outbox, rendering, SMTP, and the signed links they carry."""
