/*
 * sdk/loader.c — loading a plugin .so the same way in every host.
 *
 * kanald, the isolated plugin host, the test harness and `kanalctl plugin info` all open a
 * plugin through kanal__plugin_open: dlopen with RTLD_NOW (a missing symbol fails now, not in
 * the middle of a delivery) and RTLD_LOCAL (two plugins never see each other's symbols),
 * look up the one descriptor symbol, and check it before anything of the plugin runs — ABI
 * major equal, minor not newer, struct size, name, init, options table. A refusal names the
 * file and, for a version mismatch, both versions and what to do about it. The options
 * table is copied into this host's layout, read at the stride of the ABI minor the plugin
 * was built for (a 1.0 entry is smaller than a 1.1 one), and every host uses that copy.
 * kanal__plugin_check runs a plugin's optional check callback the same way for every host,
 * on a ctx that can only log, so that `kanalctl check`, `kanald --check` and a start apply
 * one rule.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

/* dlopen searches the library path for a name without a slash; a plugin path given as
 * "echo.so" means the file here. Returns a new string or NULL. */
static char *s_dlopen_path(const char *path)
{
	char *p;

	if (strchr(path, '/'))
		return strdup(path);
	if (asprintf(&p, "./%s", path) < 0)
		return NULL;
	return p;
}

/* Checks a descriptor in the order the user can act on: is it one, is its ABI ours, is it
 * complete. Returns 0 or KANAL_EABI with err filled. */
static int s_check_descriptor(const kanal_plugin_t *d, const kanal_option_t *options,
			      const char *path, kanal_error_t *err)
{
	char why[400];

	if (d->abi_major != KANAL_ABI_MAJOR) {
		kanal_error_set(err, path, 0, 0, NULL,
				"built for plugin ABI %u.%u but this host speaks %d.%d: rebuild it "
				"against kanal SDK %d.x",
				d->abi_major, d->abi_minor, KANAL_ABI_MAJOR, KANAL_ABI_MINOR,
				KANAL_ABI_MAJOR);
		return KANAL_EABI;
	}
	if (d->abi_minor > KANAL_ABI_MINOR) {
		kanal_error_set(err, path, 0, 0, NULL,
				"built for plugin ABI %u.%u, newer than this host's %d.%d: upgrade "
				"kanal or rebuild the plugin",
				d->abi_major, d->abi_minor, KANAL_ABI_MAJOR, KANAL_ABI_MINOR);
		return KANAL_EABI;
	}
	if (d->struct_size < KANAL_PLUGIN_V1_0_SIZE) {
		kanal_error_set(
			err, path, 0, 0, NULL,
			"descriptor is %u bytes, smaller than the %zu of plugin ABI 1.0: not "
			"built with kanal/plugin.h",
			d->struct_size, (size_t)KANAL_PLUGIN_V1_0_SIZE);
		return KANAL_EABI;
	}
	if (!d->name || !*d->name) {
		kanal_error_set(err, path, 0, 0, NULL, "descriptor has no name");
		return KANAL_EABI;
	}
	if (!d->init) {
		kanal_error_set(err, path, 0, 0, NULL, "plugin '%s' has no init callback", d->name);
		return KANAL_EABI;
	}
	if (kanal__options_check(options, why, sizeof why) != 0) {
		kanal_error_set(err, path, 0, 0, NULL,
				"plugin '%s' has a malformed options table: %s", d->name, why);
		return KANAL_EABI;
	}
	return 0;
}

int kanal__plugin_open(const char *path, kanal_loaded_t **out, kanal_error_t *err)
{
	kanal_loaded_t *loaded = NULL;
	const kanal_plugin_t *desc;
	kanal_option_t *options = NULL;
	char *open_path = NULL;
	void *handle = NULL;
	int rc;

	if (!out)
		return KANAL_EINVAL;
	*out = NULL;
	if (!path || !*path) {
		kanal_error_set(err, NULL, 0, 0, NULL, "no plugin path given");
		return KANAL_EINVAL;
	}
	open_path = s_dlopen_path(path);
	if (!open_path) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	dlerror();
	handle = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		const char *why = dlerror();
		kanal_error_set(err, path, 0, 0, NULL, "cannot load plugin: %s",
				why ? why : "unknown dlopen error");
		rc = KANAL_ENOTFOUND;
		goto fail;
	}
	desc = dlsym(handle, KANAL_PLUGIN_SYMBOL);
	if (!desc) {
		kanal_error_set(err, path, 0, 0, NULL,
				"does not export '" KANAL_PLUGIN_SYMBOL "': not a kanal plugin");
		rc = KANAL_EABI;
		goto fail;
	}
	/* The table is read at the stride of the minor the plugin was built for — only after
	 * the version itself has been found acceptable. */
	if (desc->abi_major == KANAL_ABI_MAJOR && desc->abi_minor <= KANAL_ABI_MINOR) {
		char why[400];
		rc = kanal__options_import(desc, &options, why, sizeof why);
		if (rc == KANAL_EINVAL) {
			kanal_error_set(err, path, 0, 0, NULL,
					"plugin '%s' has a malformed options table: %s",
					desc->name ? desc->name : "?", why);
			rc = KANAL_EABI;
		}
		if (rc)
			goto fail;
	}
	rc = s_check_descriptor(desc, options, path, err);
	if (rc)
		goto fail;
	loaded = calloc(1, sizeof *loaded);
	if (!loaded || !(loaded->path = strdup(path))) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	loaded->options = options;
	options = NULL;
	loaded->handle = handle;
	loaded->desc = desc;
	free(open_path);
	*out = loaded;
	return 0;
fail:
	if (rc == KANAL_ENOMEM)
		kanal_error_set(err, path, 0, 0, NULL, "out of memory loading the plugin");
	if (loaded)
		free(loaded->path);
	free(loaded);
	free(options);
	if (handle)
		dlclose(handle);
	free(open_path);
	return rc;
}

void kanal__plugin_close(kanal_loaded_t **loaded_p)
{
	kanal_loaded_t *loaded;

	if (!loaded_p || !*loaded_p)
		return;
	loaded = *loaded_p;
	*loaded_p = NULL;
	if (loaded->handle)
		dlclose(loaded->handle);
	free(loaded->options);
	free(loaded->path);
	free(loaded);
}

bool kanal__plugin_has_check(const kanal_loaded_t *loaded)
{
	const kanal_plugin_t *d = loaded ? loaded->desc : NULL;

	/* A 1.0 descriptor, or a 1.1 one built before `check` was appended, ends earlier. */
	return d && d->struct_size >= offsetof(kanal_plugin_t, check) + sizeof d->check && d->check;
}

int kanal__plugin_check(const kanal_loaded_t *loaded, const char *instance,
			const kanal_config_t *cfg, const kanal_host_ops_t *ops, void *host,
			kanal_error_t *err)
{
	/* Of the host's services only logging: whatever else the callback tries fails. */
	const kanal_host_ops_t only_log = { .log = ops ? ops->log : NULL };
	kanal_ctx_t *ctx;
	int rc;

	if (!kanal__plugin_has_check(loaded))
		return 0;
	/* No state folder: creating one would be a side effect. */
	ctx = kanal__ctx_new(instance, &only_log, host, NULL);
	if (!ctx) {
		kanal_error_set(err, NULL, 0, 0, NULL, "out of memory checking the options");
		return KANAL_ENOMEM;
	}
	rc = loaded->desc->check(ctx, cfg);
	if (rc > 0)
		rc = KANAL_EPLUGIN;
	if (rc < 0 && ctx->delivery.error[0])
		kanal_error_set(err, NULL, 0, 0, NULL, "%s", ctx->delivery.error);
	else if (rc < 0)
		kanal_error_set(err, NULL, 0, 0, NULL, "check failed (%s: %s)", kanal_errname(rc),
				kanal_strerror(rc));
	kanal__ctx_destroy(&ctx);
	return rc;
}

/* Column widths of the options table: each at least its heading. */
typedef struct describe_widths {
	int name, type, req, def;
} describe_widths_t;

static int s_max(int a, size_t b)
{
	return (size_t)a > b ? a : (int)b;
}

/* Prints the options table as aligned columns; the help text, usually the longest, last. */
static void s_describe_options(const kanal_option_t *opts, FILE *out)
{
	describe_widths_t w = { 4, 4, 8, 7 }; /* NAME TYPE REQUIRED DEFAULT */
	size_t n = 0;

	while (opts && opts[n].name)
		n++;
	if (!n) {
		fprintf(out, "options: none\n");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		w.name = s_max(w.name, strlen(opts[i].name));
		w.type = s_max(w.type, strlen(kanal_opt_type_name(opts[i].type)));
		w.def = s_max(w.def, opts[i].default_value ? strlen(opts[i].default_value) : 1);
	}
	fprintf(out, "options:\n");
	fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", w.name, "NAME", w.type, "TYPE", w.req,
		"REQUIRED", w.def, "DEFAULT", "DESCRIPTION");
	for (size_t i = 0; i < n; i++) {
		const kanal_option_t *o = &opts[i];
		fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", w.name, o->name, w.type,
			kanal_opt_type_name(o->type), w.req, o->required ? "yes" : "no", w.def,
			o->default_value ? o->default_value : "-", o->help ? o->help : "");
	}
}

void kanal__plugin_describe(const kanal_loaded_t *loaded, FILE *out)
{
	const kanal_plugin_t *d;

	if (!loaded || !out)
		return;
	d = loaded->desc;
	fprintf(out, "plugin:      %s\n", d->name);
	fprintf(out, "version:     %s\n", d->version && *d->version ? d->version : "(none)");
	if (d->description && *d->description)
		fprintf(out, "description: %s\n", d->description);
	fprintf(out, "abi:         %u.%u (this host: %d.%d)\n", d->abi_major, d->abi_minor,
		KANAL_ABI_MAJOR, KANAL_ABI_MINOR);
	fprintf(out, "file:        %s\n", loaded->path);
	fprintf(out, "callbacks:   %sinit%s%s%s%s%s\n",
		kanal__plugin_has_check(loaded) ? "check, " : "", d->start ? ", start" : "",
		d->on_message ? ", on_message" : "", d->stop ? ", stop" : "",
		d->destroy ? ", destroy" : "",
		d->on_message ? "" : " (no on_message: a pure source)");
	fprintf(out, "\n");
	s_describe_options(loaded->options, out);
}
