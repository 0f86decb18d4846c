/* Unit tests of the fd I/O helpers (include/postern/fdio.h): whole reads
 * with and without a bound, exact reads at end of file, writes at an
 * offset, directory fsync. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "postern/fdio.h"

static int
temp_file(char *path, size_t len)
{
	snprintf(path, len, "/tmp/postern-test-fdio-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	return fd;
}

static void
test_write_and_read_all(void **state)
{
	(void)state;
	char path[64];
	int fd = temp_file(path, sizeof path);
	size_t n = 100000;  /* several growth steps */
	char *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)('a' + i % 26);
	assert_int_equal(pt_write_all(fd, data, n), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	char *got;
	size_t len;
	assert_int_equal(pt_read_all(fd, 0, &got, &len), 0);
	assert_int_equal(len, n);
	assert_memory_equal(got, data, n);
	assert_int_equal(got[len], '\0');
	free(got);
	/* exactly max is fine, one byte more is EFBIG */
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(pt_read_all(fd, n, &got, &len), 0);
	free(got);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	got = NULL;
	assert_int_equal(pt_read_all(fd, n - 1, &got, &len), -1);
	assert_int_equal(errno, EFBIG);
	assert_null(got);
	free(data);
	close(fd);
	unlink(path);
}

static void
test_read_full_and_pwrite(void **state)
{
	(void)state;
	char path[64], buf[16];
	int fd = temp_file(path, sizeof path);
	assert_int_equal(pt_write_all(fd, "hello world", 11), 0);
	assert_int_equal(pt_pwrite_all(fd, "W", 1, 6), 0);
	assert_int_equal(pt_pwrite_all(fd, "x", 1, -1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	/* short at end of file, never an error */
	assert_int_equal(pt_read_full(fd, buf, sizeof buf), 11);
	assert_memory_equal(buf, "hello World", 11);
	assert_int_equal(pt_read_full(fd, buf, sizeof buf), 0);
	assert_int_equal(pt_pread_full(fd, buf, sizeof buf, 6), 5);
	assert_memory_equal(buf, "World", 5);
	close(fd);
	assert_int_equal(pt_read_full(fd, buf, 1), -1);
	assert_int_equal(pt_fsync_dir("/tmp"), 0);
	assert_int_equal(pt_fsync_dir(path), -1);  /* not a directory */
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_and_read_all),
		cmocka_unit_test(test_read_full_and_pwrite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
