"""Test peer for the DDS exchange test: receives segments and serves ``submit_label``.

Run as its own process. Writes each acknowledged label to a JSON-lines file (fsynced before
the response, as the learner must), and on shutdown writes what segments it received.
"""

import hashlib
import json
import os
import sys

from rclpy.node import Node

from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.ros.conversions import label_from_ros, segment_from_ros
from pref_rl_learner.ros.node_main import run_node
from pref_rl_learner.ros.qos import STREAM
from pref_rl_msgs.msg import Segment
from pref_rl_msgs.srv import SubmitLabel

OUT_DIR = sys.argv[1]
KNOWN_QUERIES = set(sys.argv[2].split(','))


class LabelSink(Node):
    def __init__(self):
        super().__init__('label_sink')
        self.segments = []
        self.stored = {}
        self.create_subscription(Segment, 'segments', self.on_segment, STREAM)
        self.create_service(SubmitLabel, 'submit_label', self.on_submit)
        self.log = open(os.path.join(OUT_DIR, 'labels.jsonl'), 'a', encoding='utf-8')  # noqa: SIM115
        print('label_sink ready', flush=True)

    def on_segment(self, msg):
        segment = segment_from_ros(msg)
        digest = hashlib.sha256(segment.observations.tobytes()).hexdigest()
        frames = None if segment.frames is None else list(segment.frames.shape)
        self.segments.append({'id': segment.segment_id, 'obs_sha256': digest, 'frames': frames})

    def on_submit(self, request, response):
        try:
            label = label_from_ros(request.label)
        except PrefRLError as err:
            response.success, response.message = False, str(err)
            return response
        if label.query_id not in KNOWN_QUERIES:
            response.success, response.message = False, f'unknown query id {label.query_id!r}'
        elif label.query_id in self.stored:
            response.success, response.message = True, 'already stored'
        else:
            self.log.write(json.dumps({'query_id': label.query_id, 'choice': int(label.choice),
                                       'labeler_id': label.labeler_id}) + '\n')
            self.log.flush()
            os.fsync(self.log.fileno())
            self.stored[label.query_id] = int(label.choice)
            response.success, response.message = True, 'stored'
        return response

    def destroy_node(self):
        with open(os.path.join(OUT_DIR, 'segments.json'), 'w', encoding='utf-8') as f:
            json.dump(self.segments, f)
        self.log.close()
        super().destroy_node()


if __name__ == '__main__':
    sys.exit(run_node(LabelSink, []))
