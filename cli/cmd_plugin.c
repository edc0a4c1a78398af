/*
 * cli/cmd_plugin.c — `kanalctl plugin info PLUGIN`: a plugin's descriptor as documentation.
 *
 * The plugin is opened by the same loader kanald uses (kanal__plugin_open: descriptor
 * present, ABI compatible, options table well-formed) but never initialised, so this is
 * also the quickest way to learn why kanald would refuse a .so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kanalctl.h"

/* Finds the file for `arg`: a path as given; a bare name that is a file here, as ./NAME
 * (dlopen would search the library path instead); else NAME or NAME.so in the config's
 * plugin_dir. Returns a new string, or NULL after printing why. */
static char *s_resolve(const ctl_t *ctl, const char *arg)
{
	conf_t *conf;
	char *path = NULL;
	size_t n = strlen(arg);
	bool has_so = n > 3 && !strcmp(arg + n - 3, ".so");

	if (strchr(arg, '/'))
		return strdup(arg);
	if (access(arg, F_OK) == 0)
		return asprintf(&path, "./%s", arg) < 0 ? NULL : path;
	conf = ctl_conf_load(ctl);
	if (!conf) {
		ctl_error("plugin info: no file '%s' here, and no config to find its plugin_dir",
			  arg);
		return NULL;
	}
	if (conf->plugin_dir) {
		if (asprintf(&path, "%s/%s%s", conf->plugin_dir, arg, has_so ? "" : ".so") < 0)
			path = NULL;
		if (path && access(path, F_OK) != 0) {
			ctl_error("plugin info: no plugin '%s': not a file here, nor %s", arg,
				  path);
			free(path);
			path = NULL;
		}
	} else {
		ctl_error("plugin info: no file '%s' here, and %s sets no plugin_dir", arg,
			  conf->file);
	}
	conf_destroy(&conf);
	return path;
}

int cmd_plugin(ctl_t *ctl, int argc, char **argv)
{
	kanal_loaded_t *loaded = NULL;
	kanal_error_t err;
	char *path, text[1024];
	int rc;

	if (argc < 1) {
		ctl_error("plugin: usage: kanalctl plugin info PLUGIN.so");
		return CTL_EXIT_ERROR;
	}
	if (strcmp(argv[0], "info") != 0) {
		ctl_error("plugin: no subcommand '%s' (there is: info)", argv[0]);
		return CTL_EXIT_ERROR;
	}
	if (argc != 2) {
		ctl_error("plugin info: which plugin? usage: kanalctl plugin info PLUGIN.so");
		return CTL_EXIT_ERROR;
	}
	path = s_resolve(ctl, argv[1]);
	if (!path)
		return CTL_EXIT_NO;
	kanal_error_clear(&err);
	rc = kanal__plugin_open(path, &loaded, &err);
	if (rc < 0) {
		if (!err.text[0])
			kanal_error_set(&err, path, 0, 0, NULL, "%s", kanal_strerror(rc));
		kanal_error_format(&err, text, sizeof text);
		ctl_printf(stderr, "%s\n", text);
		free(path);
		return CTL_EXIT_NO;
	}
	kanal__plugin_describe(loaded, stdout);
	kanal__plugin_close(&loaded);
	free(path);
	return CTL_EXIT_OK;
}
