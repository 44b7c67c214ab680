/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "mail-storage-private.h"
#include "mailbox-list-private.h"
#include "sqlbox-storage.h"

const char *sqlbox_plugin_version = DOVECOT_ABI_VERSION;

void sqlbox_plugin_init(struct module *module);
void sqlbox_plugin_deinit(void);

/* Registers the storage and nothing process-wide: the cryptvfs SQLite VFS
   (and with it sqlite3_initialize() and libsodium) is set up by the first
   cvfs_open_v2(), whose failure fails that mailbox, not the process.  A
   doveadm or lmtp that loads the plugin without opening an sqlbox
   mailbox behaves as without it. */
void sqlbox_plugin_init(struct module *module ATTR_UNUSED)
{
	mail_storage_class_register(&sqlbox_storage);
	mailbox_list_register(&sqlbox_mailbox_list);
	sqlbox_attributes_init();
}

void sqlbox_plugin_deinit(void)
{
	sqlbox_body_deinit();
	sqlbox_attributes_deinit();
	mailbox_list_unregister(&sqlbox_mailbox_list);
	mail_storage_class_unregister(&sqlbox_storage);
}
