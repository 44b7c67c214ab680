/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "sqlbox-storage.h"

/* The storage's way into the user's mail: the database opened once per
   storage (sqlbox-db.c), then what LMTP sealed into the spool meanwhile
   imported (sqlbox-spool.c); and a folder's row looked up.  Every
   mailbox, list and save path opens through here, so the import starts
   with the first access of a session that has the key, and the database
   layer stays free of the spool. */

int sqlbox_storage_open(struct sqlbox_storage *storage)
{
	if (storage->db != NULL)
		return 0;
	if (sqlbox_db_open(storage) < 0)
		return -1;
	if (sqlbox_spool_pending(storage) &&
	    sqlbox_spool_import(storage) < 0) {
		/* The mail stays in the spool for the next open. */
		e_error(storage->storage.event, "sqlbox: spool import failed: %s",
			mail_storage_get_last_internal_error(&storage->storage,
							     NULL));
	}
	return 0;
}

int sqlbox_mailbox_refresh_row(struct sqlbox_mailbox *mbox)
{
	int ret;

	if (sqlbox_storage_open(mbox->storage) < 0)
		return -1;
	ret = sqlbox_db_mailbox_lookup(mbox->storage, mbox->box.name,
				       &mbox->id, &mbox->uid_validity,
				       mbox->guid);
	if (ret == 0) {
		mail_storage_set_error(mbox->box.storage, MAIL_ERROR_NOTFOUND,
				       T_MAIL_ERR_MAILBOX_NOT_FOUND(mbox->box.vname));
	}
	return ret > 0 ? 0 : -1;
}
