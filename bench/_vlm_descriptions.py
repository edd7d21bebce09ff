"""VLM-style descriptions for ``bench text``: written by hand for this benchmark (not model outputs), in the style of
the frame (D^F) and clip (D^C) descriptions a vision-language model gives M3-CVC: ten scenes, one pair each."""

PAIRS: tuple[tuple[str, str], ...] = (
    ("A large white rabbit with a round belly sits in a sunlit green meadow, surrounded by tall grass, small purple "
     "flowers and a broad oak tree on the left; the sky is pale blue with soft clouds.",
     "The rabbit stretches, yawns and slowly hops toward the camera while a butterfly circles its head; the camera "
     "stays still and the light remains warm and even."),
    ("A narrow city street at dusk, wet asphalt reflecting orange street lamps, parked cars on both sides and a "
     "cyclist in a yellow jacket near the centre of the frame.",
     "The cyclist rides away from the camera and turns right at the crossing; a bus passes from left to right and "
     "the camera pans slightly to follow it."),
    ("Close-up of a tabby cat lying on a wooden floor, its green eyes half closed, sunlight falling across its fur "
     "from a window on the right.",
     "The cat lifts its head, blinks twice and looks toward the window; its tail flicks once; the camera is static "
     "with a shallow depth of field."),
    ("An astronaut in a white spacesuit stands in front of an American flag, holding a helmet under the left arm, "
     "smiling at the camera in a studio setting.",
     "The astronaut turns slightly to the right and raises a hand in greeting; the camera slowly zooms in on the "
     "face while the background stays out of focus."),
    ("A rocky coastline under an overcast sky, grey waves breaking against dark boulders, white foam spreading "
     "over the sand in the foreground.",
     "Waves roll in and break repeatedly against the rocks, spray rising and falling; the camera holds a wide "
     "shot and the clouds drift slowly to the left."),
    ("A young girl with short brown hair, wearing a fur-trimmed jacket, kneels in the snow beside a small wounded "
     "dragon with red and grey scales.",
     "The girl reaches out and gently touches the dragon's wing; the dragon flinches, then calms down; snow keeps "
     "falling and the camera slowly moves closer."),
    ("A red motorcycle parked on a gravel path in front of a brick wall, chrome exhaust pipes catching the light, "
     "a black helmet resting on the seat.",
     "A rider walks into the frame from the left, puts on the helmet, starts the engine and drives away to the "
     "right; the camera pans to follow the motorcycle."),
    ("A cup of coffee with latte art in the shape of a leaf sits on a white saucer on a dark wooden table, steam "
     "rising gently from the surface.",
     "A hand enters from the right, lifts the cup and takes it out of frame, leaving the saucer; the camera is "
     "fixed and the steam fades away."),
    ("A crowded pedestrian square seen from a high fixed camera, people in winter coats walking in different "
     "directions across grey paving stones, a bench and a lamp post on the right.",
     "People cross the square from left to right and back, two of them stop to talk near the bench, a child runs "
     "toward the top of the frame; the camera does not move."),
    ("A field of yellow sunflowers under a clear summer sky, one large flower in sharp focus in the foreground, "
     "green hills and a farmhouse in the distance.",
     "The flowers sway gently in the wind while a bee lands on the central sunflower and crawls across it; the "
     "camera slowly tracks to the right along the field."),
)
