// See nsenter.go.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYNC_FD 5

static void fail(const char *what) {
	char msg[256];
	int n = snprintf(msg, sizeof msg, "kiln sandbox init: %s: %s\n", what, strerror(errno));
	if (n > 0) {
		ssize_t w = write(2, msg, (size_t)n);
		(void)w;
	}
	_exit(2);
}

// child is the init proper, once forked.
static volatile pid_t child;

// on_term kills the init proper, and so its PID namespace; this process
// then reaps it and exits, once the namespace is empty. The worker stops
// an action this way (SIGKILL here would leave it to PR_SET_PDEATHSIG,
// without waiting for the namespace to die).
static void on_term(int sig) {
	(void)sig;
	if (child > 0) kill(child, SIGKILL);
	else _exit(128 + SIGKILL);
}

__attribute__((constructor)) static void kiln_nsenter(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 1 || !argv || !argv[0] || strcmp(argv[0], "kiln-sandbox-init") != 0) return;
	const char *env = getenv("KILN_NSENTER");
	if (!env || !*env) return;
	char *end;
	unsigned long flags = strtoul(env, &end, 16);
	if (*end != 0) fail("bad KILN_NSENTER");
	struct sigaction sa = {.sa_handler = on_term};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0) fail("sigaction");
	if (unshare((int)flags) < 0) fail("unshare");
	char c = 'u';
	if (write(SYNC_FD, &c, 1) != 1) fail("tell the worker");
	ssize_t r;
	while ((r = read(SYNC_FD, &c, 1)) < 0 && errno == EINTR) {
	}
	if (r != 1 || c != 'm') fail("wait for the id maps");
	close(SYNC_FD);
	// The child learns here whether this process died before it asked to
	// die with it: the pipe's write end is only this process's.
	int alive[2];
	if (pipe2(alive, O_CLOEXEC) < 0) fail("pipe");
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old); // until child is set
	pid_t pid = fork();
	if (pid < 0) fail("fork");
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		close(alive[1]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl");
		struct pollfd p = {alive[0], POLLIN, 0};
		if (poll(&p, 1, 0) > 0) _exit(2); // the parent is gone
		close(alive[0]);
		return; // the Go runtime starts: the init proper, PID 1
	}
	child = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(alive[0]);
	// The init proper holds the action's descriptors; this process keeps
	// none, so that the worker sees the report's end when the init ends.
	for (int fd = 0; fd < 5; fd++) close(fd);
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) _exit(2);
	}
	if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
	_exit(128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
}
