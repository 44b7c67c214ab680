/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "mail-storage-private.h"
#include "mailbox-list-private.h"
#include "sqlbox-storage.h"

#include "cryptvfs.h"

const char *sqlbox_plugin_version = DOVECOT_ABI_VERSION;

void sqlbox_plugin_init(struct module *module);
void sqlbox_plugin_deinit(void);

void sqlbox_plugin_init(struct module *module ATTR_UNUSED)
{
	if (cvfs_register() != SQLITE_OK)
		i_fatal("sqlbox: registering the cryptvfs SQLite VFS failed");
	mail_storage_class_register(&sqlbox_storage);
	mailbox_list_register(&sqlbox_mailbox_list);
	sqlbox_attributes_init();
}

void sqlbox_plugin_deinit(void)
{
	sqlbox_attributes_deinit();
	mailbox_list_unregister(&sqlbox_mailbox_list);
	mail_storage_class_unregister(&sqlbox_storage);
}
