/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef SQLBOX_FILE_H
#define SQLBOX_FILE_H

/* The sqlbox database as programs outside the mail storage read it
   (doveadm launchpad backup): no Dovecot header, names only.  Where it
   lies in a home under the default mail_location is KR_MAILBOX_DB
   (keyring.h); its tables are sqlbox-schema.c's. */

/* One row, one column: how many messages the file holds, every folder
   counted (table mail). */
#define SQLBOX_SQL_COUNT_MESSAGES "SELECT count(*) FROM mail"

#endif
