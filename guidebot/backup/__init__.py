"""Backup and restore: `guidebot backup PATH`, `guidebot restore PATH`.

SQLite is copied with its online backup API while the server runs; PostgreSQL with pg_dump
(custom format) and restored with pg_restore. The backup carries the instant it was taken
(`backup_marks`), so that after a restore the SOP engine settles, before it sends anything,
the customer-facing tasks the backup shows open but WeCom shows sent since
(guidebot.sop.restored).
"""
